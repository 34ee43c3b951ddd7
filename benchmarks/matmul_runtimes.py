"""fp32 matrix products of MiniLM's shapes in torch (MKL) and in ONNX Runtime (MLAS), with the CPUs this process may
use: why the ONNX export's lead over a torch pipeline differs from one processor to the next.

Usage: python benchmarks/matmul_runtimes.py [--rows 896]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def median_seconds(run, repeats: int = 30) -> float:
    run()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        run()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def onnx_matmul(weight, rows: int, threads: int):
    import onnxruntime
    from onnx import TensorProto, helper

    k, n = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["A", "W"], ["Y"])],
        "matmul",
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [rows, k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [rows, n])],
        [helper.make_tensor("W", TensorProto.FLOAT, [k, n], weight.ravel())],
    )
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def main() -> int:
    from toolkit.hardware import benchmark_header, torch_threads

    print(benchmark_header(), flush=True)
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rows", type=int, default=32 * 28, help="token rows: batch 32 of 28 tokens (rt-polarity's mean)"
    )
    args = parser.parse_args()
    import torch

    threads = torch_threads()
    torch.set_num_threads(threads)
    print(
        f"{threads} threads each\n\n"
        f"{'matrix product':32} {'torch GFLOP/s':>14} {'onnxruntime GFLOP/s':>20} {'ratio':>6}"
    )
    for k, n, what in (
        (384, 1536, "feed-forward up"),
        (1536, 384, "feed-forward down"),
        (384, 384, "attention projection"),
    ):
        a, w = torch.randn(args.rows, k), torch.randn(k, n)
        session = onnx_matmul(w.numpy(), args.rows, threads)
        feed = {"A": a.numpy()}
        torch_s = median_seconds(lambda a=a, w=w: torch.matmul(a, w))
        onnx_s = median_seconds(lambda session=session, feed=feed: session.run(None, feed))
        flops = 2 * args.rows * k * n
        print(
            f"{f'{args.rows}x{k} by {k}x{n} ({what})':32} {flops / torch_s / 1e9:14.1f} {flops / onnx_s / 1e9:20.1f} "
            f"{torch_s / onnx_s:5.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
