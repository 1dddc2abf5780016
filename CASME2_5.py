"""AM-GCN on CASME II, the 5-class protocol (its classes: data/protocols.py), LOSO.

    python CASME2_5.py --raf_path /data/CASME2 --epochs 100
"""
from main import main

DEFAULTS = dict(batch_size=32, lr=0.0008, epochs=100)

if __name__ == "__main__":
    raise SystemExit(main(protocol="5class", defaults=DEFAULTS))
