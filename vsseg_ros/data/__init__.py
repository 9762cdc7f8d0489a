"""Datasets for training and evaluation (ROS-free): the readers (:mod:`.camvid`, :mod:`.cityscapes`,
:mod:`.folder`, what they share :mod:`.base`, by name :mod:`.registry`) and training clips (:mod:`.clips`).
Import from those modules."""
