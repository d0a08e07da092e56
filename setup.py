"""fusion_ros: an ament_python package that also installs with pip."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fusion_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "training", "training.*"]),
    package_data={PACKAGE: ["models/*", "metrics/*.json"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", sorted(glob("launch/*.launch.py"))),
        (f"share/{PACKAGE}/config", sorted(glob("config/*.yaml") + glob("config/*.xml"))),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="fusion_ros team",
    maintainer_email="team@fusion-ros.dev",
    description="Thermal + RGB fused perception for ROS 2 (bi-level dynamic learning).",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fusion-demo = fusion_ros.demo:main",
            "fusion_node = fusion_ros.nodes.fusion_node:main",
            "fusion-make-sample-bag = fusion_ros.bag.sample:main",
            "fusion-eval-bag = fusion_ros.bag.evaluate:main",
            "fusion-eval-pairs = fusion_ros.pairs_eval:main",
            "fusion-eval-fusion = fusion_ros.quality_eval:main",
            "fusion-play-bag = fusion_ros.nodes.bag_player:main",
            "fusion-calibrate = fusion_ros.calibration.cli:main",
            "fusion-make-dataset = fusion_ros.synthetic:main",
            "fusion-train = training.train:main",
            "fusion-export = training.export:main",
            "fusion-build-engine = training.build_engine:main",
        ],
    },
)
