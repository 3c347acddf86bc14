"""Consensus of crowd annotations: STAPLE, majority vote, point/polyline/polygon fusion, metrics.

Pure functions over NumPy arrays (no I/O). See DESIGN.md, section "Consensus".
"""

from crowdseg.consensus.interpolation import Interpolation, interpolate_frames, signed_distance
from crowdseg.consensus.lines import LineFusion, fuse_polylines, resample_polyline
from crowdseg.consensus.metrics import (
    boundary_points,
    dice,
    hausdorff95,
    jaccard,
    match_points,
    modified_hausdorff,
    point_precision_recall,
    sensitivity_specificity,
)
from crowdseg.consensus.multilabel import MultiLabelStapleResult, multilabel_staple
from crowdseg.consensus.performance import (
    Counts,
    Performance,
    PerformanceTracker,
    object_counts,
    staple_counts,
)
from crowdseg.consensus.points import PointClustering, RaterPointScore, cluster_points, crowd_quality
from crowdseg.consensus.polygons import PolygonFusion, fuse_polygons
from crowdseg.consensus.staple import (
    StapleResult,
    band_m_step,
    majority_vote,
    staple,
    staple_e_step,
    staple_m_step,
)

__all__ = [
    "Counts",
    "Interpolation",
    "LineFusion",
    "MultiLabelStapleResult",
    "Performance",
    "PerformanceTracker",
    "PointClustering",
    "PolygonFusion",
    "RaterPointScore",
    "StapleResult",
    "band_m_step",
    "boundary_points",
    "cluster_points",
    "crowd_quality",
    "dice",
    "fuse_polygons",
    "fuse_polylines",
    "hausdorff95",
    "interpolate_frames",
    "jaccard",
    "majority_vote",
    "match_points",
    "modified_hausdorff",
    "multilabel_staple",
    "object_counts",
    "point_precision_recall",
    "resample_polyline",
    "sensitivity_specificity",
    "signed_distance",
    "staple",
    "staple_counts",
    "staple_e_step",
    "staple_m_step",
]
