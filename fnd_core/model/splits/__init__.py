"""What keeps an estimate honest about new posts: stories (leak groups of reposts) weigh once
and never straddle a split; topics (news events) are the unit cross-validation holds out whole.

No torch here: numpy and scikit-learn only.
"""
