"""The `tiffin` command line."""
