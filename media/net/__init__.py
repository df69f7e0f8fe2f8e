"""Network resilience shared by the media paths: ICE that survives heavy packet loss."""
from media.net.consent import ConsentKeeper, tolerate_loss, tolerate_loss_on

__all__ = ["ConsentKeeper", "tolerate_loss", "tolerate_loss_on"]
