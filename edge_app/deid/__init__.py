"""The privacy boundary: raw frames and audio go in, de-identified media comes out."""

from edge_app.deid.video import VideoDeidentifier, VideoDeidOptions

__all__ = ["VideoDeidOptions", "VideoDeidentifier"]
