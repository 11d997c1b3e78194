"""Data: MMRec-layout datasets, synthetic stand-ins, and the graphs built from them (DGL or built-in)."""
