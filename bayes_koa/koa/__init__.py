"""The knee-osteoarthritis MSC application: bundled data, simulation on the real designs, the 2023 paper's claims."""
