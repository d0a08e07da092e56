"""Thermal -> RGB registration of a camera pair (``fusion-calibrate``): from scene content over many frames
(scene.py) or from a heated target (target.py); inputs (frames.py), the node's parameter file and a check
picture (output.py), the command line (cli.py), and known-answer rigs for testing it (warped_rig.py)."""
