"""Offline training of fusion_ros models: bi-level dynamic learning, datasets, export."""
