"""pip metadata for the ROS-free core (``pip install .`` gives the library and the
``affective-memory`` CLI without ROS). On a ROS system the package is built by
colcon through CMakeLists.txt, which also generates the msg/srv interfaces."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["affective_memory_ros", "affective_memory_ros.*"]),
    package_data={"affective_memory_ros": ["models/*.safetensors", "models/*.json", "models/*.md"]},
    install_requires=[
        "numpy",
        "opencv-python-headless<5",
        "safetensors",
        "torch",
        "torchvision",
        "tqdm",
    ],
    entry_points={"console_scripts": ["affective-memory = affective_memory_ros.cli:main"]},
)
