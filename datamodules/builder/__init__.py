"""The offline scenario builder: raw Amazon dumps to the FedDCSR text format, with the papers' protocol.

Run it as ``python -m lightning_fed.datamodules.builder`` (``--help`` lists its options).
"""
