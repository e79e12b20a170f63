"""The consuming side: receive, render, send through ACS Email, settle."""
