"""keepwise CLI commands kept out of service/cli.py, one module each."""
