"""AM-GCN on CASME II, 3 classes (negative, positive, surprise), LOSO.

    python CASME2_3.py --raf_path /data/CASME2 --epochs 100
    python CASME2_3.py --raf_path /data/CASME2 --protocol megc2019   # the fixed MEGC2019 list
"""
from main import main

DEFAULTS = dict(batch_size=24, lr=0.0001, epochs=100)

if __name__ == "__main__":
    raise SystemExit(main(protocol="3class", defaults=DEFAULTS))
