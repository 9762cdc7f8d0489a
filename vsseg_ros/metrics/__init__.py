"""Segmentation metrics: confusion matrix (mIoU, :mod:`.confusion`), boundary F-score (:mod:`.boundary`), video /
flow-warp consistency (:mod:`.consistency`), latency (:mod:`.latency`), and :class:`~.scorer.StreamScorer`, which
keeps all of them over a stream of frames (:mod:`.scorer`). Import from those modules."""
