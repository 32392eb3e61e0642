"""``python -m qcmb_dask.cli``: the same command line as ``qcmb-dask`` (tests and the driver job use it)."""

from qcmb_dask.cli import main

if __name__ == "__main__":
    main()
