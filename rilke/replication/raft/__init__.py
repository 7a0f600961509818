"""rilke.replication.raft"""
