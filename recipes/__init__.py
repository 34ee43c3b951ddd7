"""Task recipes: what is special about each task; the engine does the rest."""
