"""What every part needs and none owns: files written atomically, memory room, downloads,
signals, text options, progress and cancellation, small conversions.
"""
