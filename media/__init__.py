"""Media pipelines: video capture/encode/send and receive, room audio processing."""
