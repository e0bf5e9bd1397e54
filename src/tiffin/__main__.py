"""`python -m tiffin` is the `tiffin` command."""

from tiffin.cli.main import main

main()
