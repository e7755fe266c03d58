"""Referrals: a member sends a patient to a service or specialist at another member."""
