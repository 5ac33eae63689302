"""Foundation-model providers: image features, metric depth and text embeddings."""
