"""What the toolkit reads and writes besides media: checkpoints, published weights and their
downloads, and the manifest of an exported model."""
