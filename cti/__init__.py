"""The CTI platform: AMI and AGI protocol cores, event bus, store, web app, daemon wiring.

Features (ivr, acd, recordings, crm_bridge) import from here; nothing here imports a
feature.
"""
