#!/usr/bin/env bash
# Install roombox as a systemd service (Raspberry Pi OS / Debian), as root:
#   sudo make install                       # terminal: enable roombox.service
#   sudo make install ROOMBOX_PROFILE=pi5-usb
# Layout: the program in a venv at $PREFIX (default /opt/roombox), configuration in
# /etc/roombox (roombox.env picks the profile), state in /var/lib/roombox, the control
# socket in /run/roombox. The provisioning service unit is installed but not enabled.
#
# DESTDIR=/some/dir stages everything below that directory (for packages and tests) and
# runs no systemctl; --no-venv skips building the venv (a package that ships its own).
set -euo pipefail

PREFIX="${PREFIX:-/opt/roombox}"
DESTDIR="${DESTDIR:-}"
PROFILE="${ROOMBOX_PROFILE:-sim}"
PYTHON="${PYTHON:-python3}"
SRC="$(cd "$(dirname "$0")/.." && pwd)"
BUILD_VENV=1
[ "${1:-}" = "--no-venv" ] && BUILD_VENV=0

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
	echo "install: run as root (sudo make install)" >&2
	exit 1
fi

unit_dir="$DESTDIR/etc/systemd/system"
mkdir -p "$unit_dir" "$DESTDIR/usr/lib/sysusers.d" "$DESTDIR/usr/lib/tmpfiles.d" "$DESTDIR/etc/roombox"

if [ "$BUILD_VENV" = 1 ]; then
	echo "install: building $PREFIX (system site packages, for python3-picamera2 and python3-lgpio)"
	"$PYTHON" -m venv --system-site-packages "$DESTDIR$PREFIX"
	"$DESTDIR$PREFIX/bin/pip" install -q --upgrade pip
	"$DESTDIR$PREFIX/bin/pip" install -q "$SRC"
	install -m 0644 "$SRC/README.md" "$DESTDIR$PREFIX/README.md"
fi

for unit in roombox.service roombox-provisioning.service; do
	sed "s#/opt/roombox#$PREFIX#g" "$SRC/systemd/$unit" > "$unit_dir/$unit"
	chmod 0644 "$unit_dir/$unit"
done
install -m 0644 "$SRC/systemd/sysusers.conf" "$DESTDIR/usr/lib/sysusers.d/roombox.conf"
install -m 0644 "$SRC/systemd/tmpfiles.conf" "$DESTDIR/usr/lib/tmpfiles.d/roombox.conf"
# The provisioning command "reboot" goes through logind; this rule allows it for roombox only.
mkdir -p "$DESTDIR/etc/polkit-1/rules.d"
install -m 0644 "$SRC/systemd/roombox-reboot.rules" "$DESTDIR/etc/polkit-1/rules.d/50-roombox-reboot.rules"

root_args=()
[ -n "$DESTDIR" ] && root_args=(--root="$DESTDIR")
systemd-sysusers "${root_args[@]}" "$DESTDIR/usr/lib/sysusers.d/roombox.conf"
systemd-tmpfiles --create "${root_args[@]}" "$DESTDIR/usr/lib/tmpfiles.d/roombox.conf"

env_file="$DESTDIR/etc/roombox/roombox.env"
if [ ! -e "$env_file" ]; then
	printf '# Read by roombox.service.\nROOMBOX_PROFILE=%s\n' "$PROFILE" > "$env_file"
	cat >> "$env_file" <<'ENV'
# Optional (README.md): a standing meeting without provisioning, e.g.
#ROOMBOX_MEETING=janus+https://meet.example.org/janus?room=1234
#ROOMBOX_TURN_URL=turns:turn.example.org:5349
#ROOMBOX_TURN_USERNAME=
#ROOMBOX_TURN_CREDENTIAL=
# Loss (%) the video FEC and audio redundancy plan for at least (by default 0 for video:
# parity once loss is seen; 20 for audio); e.g. 20-30 for a site on poor Wi-Fi.
#ROOMBOX_LOSS_FLOOR_PCT=
ENV
	chmod 0640 "$env_file"
fi

if [ -z "$DESTDIR" ]; then
	chgrp roombox "$env_file"
	systemctl daemon-reload
	systemctl enable roombox.service
	echo "install: done. Start it with: systemctl start roombox; follow it with: journalctl -fu roombox"
else
	echo "install: staged in $DESTDIR"
fi
