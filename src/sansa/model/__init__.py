"""SANSA's model: SAM2 (Meta's ``sam2`` package) with AdaptFormer adapters in its Hiera trunk."""
