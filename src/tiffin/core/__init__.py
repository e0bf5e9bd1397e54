"""The bottom layer: ids, clock, settings, errors and pure domain rules every other layer shares."""
