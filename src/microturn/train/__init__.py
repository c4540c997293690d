"""Training: world episodes -> micro-turn tensors -> the trainer."""
