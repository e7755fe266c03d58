"""Surgery cases: a procedure, a surgeon and a whole team booked into a theatre at once."""
