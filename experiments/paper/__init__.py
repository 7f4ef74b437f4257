"""The paper's experiments that are measurements rather than training runs (griffin-measure):
training step time against sequence length (Fig 3, `train_speed`) and decoding latency,
throughput and cache memory (Figs 1b and 4, `inference`)."""
