"""Cards that run a background job and swap the dataset in place (transcription, audio
measurement): each has `layout(dataset)` and `callbacks(app, dataset, …)`."""
