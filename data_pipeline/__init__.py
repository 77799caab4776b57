"""GTEA61 on disk -> tensors. No model code and no ray."""

__all__: list[str] = []
