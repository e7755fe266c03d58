"""Inpatient flow: admission requests, bed assignment, transfer, discharge, cleaning, bed board."""
