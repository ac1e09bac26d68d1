"""``python -m nsmigrate``: the same as the ``nsmigrate`` command."""

from nsmigrate.cli.entry import main

if __name__ == "__main__":
    main()
