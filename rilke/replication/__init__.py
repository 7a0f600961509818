"""rilke.replication"""
