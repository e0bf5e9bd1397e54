"""The reconciler: the only writer of the world. It compares what users want with what runs and moves
the world one step at a time; its decisions are data that a backend executes."""
