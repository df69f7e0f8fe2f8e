"""Video: camera → H.264 encoder (hardware where the box has one) → WebRTC, and remote
H.264 → decoder. See README.md in this directory for the pipeline and its copies."""
from media.video.chain import EncoderChoice, choose_encoder
from media.video.config import Rung, VideoConfig
from media.video.encoder import VideoEncoder
from media.video.errors import (CodecNotNegotiated, EncoderUnavailable, NoEncoderAvailable,
                                VideoConfigError, VideoError)
from media.video.outputs import AnnexBFileOutput, EncodedOutput
from media.video.receiver import VideoReceiver
from media.video.webrtc import EncodedVideoTrack, VideoSender

__all__ = ["AnnexBFileOutput", "CodecNotNegotiated", "EncodedOutput", "EncodedVideoTrack",
           "EncoderChoice", "EncoderUnavailable", "NoEncoderAvailable", "Rung", "VideoConfig",
           "VideoConfigError", "VideoEncoder", "VideoError", "VideoReceiver", "VideoSender",
           "choose_encoder"]
