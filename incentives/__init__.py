"""Contribution valuation (Shapley estimators), reward allocation and Merkle reward trees."""
