"""CPU speed tricks (concurrent batch parts, a hand-written LSTM gradient) behind one policy."""
