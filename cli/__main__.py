"""``python -m cli``: the same as ``nsmigrate``."""

from cli.main import main

if __name__ == "__main__":
    main()
