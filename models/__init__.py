"""Pure PyTorch modules of the report. No ray, no data_pipeline, no file I/O except weights."""

__all__: list[str] = []
