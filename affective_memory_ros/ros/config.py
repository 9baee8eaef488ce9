"""Settings that only the node has (topics and rates), declared once like every other setting.

Kept free of rclpy so the README's parameter table can be generated anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..modes import MemorySettings
from ..pipeline import PipelineConfig
from ..settings import check, setting
from ..store import StoreConfig


@dataclass(frozen=True)
class NodeConfig:
    image_topic: str = setting("/camera/image_raw", "camera topic (sensor_msgs/Image)", cli=False)
    av_topic: str = setting("/affect/av", "ArousalValence output topic", cli=False)
    memory_state_topic: str = setting("/affect/memory_state", "MemoryState output topic", cli=False)
    debug_image_topic: str = setting("/affect/debug_image", "annotated image topic", cli=False)
    publish_debug_image: bool = setting(False, "publish the annotated debug image", cli=False)
    memory_state_rate: float = setting(1.0, "MemoryState publication rate (Hz)", range=(0.1, 50.0), cli=False)

    def __post_init__(self) -> None:
        check(self)


#: Every config the node reads its parameters into, in the README table's order.
NODE_CONFIGS: tuple[type, ...] = (NodeConfig, PipelineConfig, MemorySettings, StoreConfig)
