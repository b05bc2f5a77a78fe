"""Call control from the desktop: hold, transfers, consultation, conference, hang-up,
DTMF and a supervisor's take-over, for any kind of agent phone (decision 0023)."""
