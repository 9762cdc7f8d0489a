"""Datasets for training and evaluation (ROS-free)."""

from vsseg_ros.data.camvid import CamVid, CamVidTrainDataset, DatasetError, Sample

__all__ = ["CamVid", "CamVidTrainDataset", "DatasetError", "Sample"]
