"""rilke.bench"""
