"""``python -m ductaflow``: the ``ductaflow`` command."""

from .cli import main

if __name__ == "__main__":
    main()
