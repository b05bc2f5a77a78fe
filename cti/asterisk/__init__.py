"""Running a real Asterisk 22 beside the daemon: Docker where an engine answers, otherwise a
Debian root filesystem built with mmdebstrap/debootstrap and run with unshare + chroot."""
