"""rosbag2 tools: a synthetic sample bag, offline evaluation of the node on a bag, and its report.

    fusion-make-sample-bag OUT            -> fusion_ros.bag.sample   (synthetic drive + ground truth)
    fusion-eval-bag BAG --out DIR         -> fusion_ros.bag.evaluate (metrics.json, annotated mcap, report.md)
    fusion-play-bag BAG [--rate --loop]   -> fusion_ros.nodes.bag_player (live replay through rclpy, /clock)

Bags are read and written with the pure-Python ``rosbags`` library (rosbag2_py is not on PyPI); nothing
here imports rclpy. Submodules load lazily so importing the package costs nothing.
"""
from .reader import BagError, BagReader, BagWriter, typestore

__all__ = ["BagError", "BagReader", "BagWriter", "evaluate_bag", "make_sample_bag", "typestore"]


def __getattr__(name):
    if name == "evaluate_bag":
        from .evaluate import evaluate_bag

        return evaluate_bag
    if name == "make_sample_bag":
        from .sample import make_sample_bag

        return make_sample_bag
    raise AttributeError(name)
