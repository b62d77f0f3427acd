/**
 * BookingWidget — embeddable appointment calendar for the clinic portal.
 *
 * Renders a month grid, lets the visitor pick a day, loads free slots for
 * that day from the availability API and collects contact details in a
 * validated form before submitting a hold + confirm request.
 *
 * Used on partner sites via <BookingWidget providerId="..." />. Styling is
 * plain CSS modules so the host page can override colours.
 */
import React, {
  useCallback,
  useEffect,
  useMemo,
  useReducer,
  useRef,
  useState,
} from "react";
import styles from "./BookingWidget.module.css";

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

export interface Slot {
  id: string;
  start: string; // ISO timestamp in UTC
  end: string;
  practitionerName: string;
  remaining: number;
}

export interface BookingRequest {
  slotId: string;
  name: string;
  email: string;
  phone?: string;
  notes?: string;
  reminderOptIn: boolean;
}

export interface BookingConfirmation {
  reference: string;
  slot: Slot;
  calendarLink: string;
}

export interface BookingWidgetProps {
  providerId: string;
  apiBase?: string;
  timeZone?: string;
  locale?: string;
  minNoticeHours?: number;
  maxDaysAhead?: number;
  onBooked?: (confirmation: BookingConfirmation) => void;
}

type FieldName = "name" | "email" | "phone" | "notes";

type FormErrors = Partial<Record<FieldName, string>>;

interface FormState {
  values: Record<FieldName, string>;
  touched: Partial<Record<FieldName, boolean>>;
  reminderOptIn: boolean;
}

type FormAction =
  | { type: "change"; field: FieldName; value: string }
  | { type: "blur"; field: FieldName }
  | { type: "toggleReminder" }
  | { type: "touchAll" }
  | { type: "reset" };

const initialForm: FormState = {
  values: { name: "", email: "", phone: "", notes: "" },
  touched: {},
  reminderOptIn: true,
};

function formReducer(state: FormState, action: FormAction): FormState {
  switch (action.type) {
    case "change":
      return { ...state, values: { ...state.values, [action.field]: action.value } };
    case "blur":
      return { ...state, touched: { ...state.touched, [action.field]: true } };
    case "toggleReminder":
      return { ...state, reminderOptIn: !state.reminderOptIn };
    case "touchAll":
      return {
        ...state,
        touched: { name: true, email: true, phone: true, notes: true },
      };
    case "reset":
      return initialForm;
    default:
      return state;
  }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;
const PHONE_RE = /^\+?[0-9 ()-]{7,20}$/;
const MAX_NOTES = 500;

export function validateBooking(values: Record<FieldName, string>): FormErrors {
  const errors: FormErrors = {};
  const name = values.name.trim();
  if (!name) {
    errors.name = "Please enter your name.";
  } else if (name.length < 2) {
    errors.name = "Name looks too short.";
  }

  if (!values.email) {
    errors.email = "Email is required so we can send your confirmation.";
  } else if (!EMAIL_RE.test(values.email)) {
    errors.email = "That email address doesn't look right.";
  }

  if (values.phone && !PHONE_RE.test(values.phone)) {
    errors.phone = "Use digits, spaces and an optional leading +.";
  }

  if (values.notes.length > MAX_NOTES) {
    errors.notes = `Notes are limited to ${MAX_NOTES} characters.`;
  }
  return errors;
}

// ---------------------------------------------------------------------------
// Date helpers (kept dependency-free on purpose)
// ---------------------------------------------------------------------------

function startOfMonth(d: Date): Date {
  return new Date(d.getFullYear(), d.getMonth(), 1);
}

function addMonths(d: Date, n: number): Date {
  return new Date(d.getFullYear(), d.getMonth() + n, 1);
}

function addDays(d: Date, n: number): Date {
  const copy = new Date(d);
  copy.setDate(copy.getDate() + n);
  return copy;
}

function isSameDay(a: Date, b: Date): boolean {
  return (
    a.getFullYear() === b.getFullYear() &&
    a.getMonth() === b.getMonth() &&
    a.getDate() === b.getDate()
  );
}

function toIsoDate(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** Returns 6 rows x 7 columns of dates, weeks starting on Monday. */
function buildMonthGrid(month: Date): Date[][] {
  const first = startOfMonth(month);
  const weekday = (first.getDay() + 6) % 7; // Monday = 0
  const gridStart = addDays(first, -weekday);
  const rows: Date[][] = [];
  for (let r = 0; r < 6; r++) {
    const row: Date[] = [];
    for (let c = 0; c < 7; c++) {
      row.push(addDays(gridStart, r * 7 + c));
    }
    rows.push(row);
  }
  return rows;
}

function formatTime(iso: string, locale: string, timeZone: string): string {
  return new Intl.DateTimeFormat(locale, {
    hour: "2-digit",
    minute: "2-digit",
    timeZone,
  }).format(new Date(iso));
}

// ---------------------------------------------------------------------------
// Data hooks
// ---------------------------------------------------------------------------

interface AsyncState<T> {
  data: T | null;
  loading: boolean;
  error: string | null;
}

/** Loads which days in a month have at least one free slot. */
function useAvailableDays(apiBase: string, providerId: string, month: Date) {
  const [state, setState] = useState<AsyncState<Set<string>>>({
    data: null,
    loading: false,
    error: null,
  });

  useEffect(() => {
    const controller = new AbortController();
    const monthKey = `${month.getFullYear()}-${String(month.getMonth() + 1).padStart(2, "0")}`;
    setState((s) => ({ ...s, loading: true, error: null }));
    fetch(`${apiBase}/providers/${providerId}/days?month=${monthKey}`, {
      signal: controller.signal,
    })
      .then((res) => {
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        return res.json() as Promise<{ days: string[] }>;
      })
      .then((body) => setState({ data: new Set(body.days), loading: false, error: null }))
      .catch((err) => {
        if (err.name === "AbortError") return;
        setState({ data: null, loading: false, error: "Could not load availability." });
      });
    return () => controller.abort();
  }, [apiBase, providerId, month]);

  return state;
}

/** Loads slots for a single day. Results are cached per day in a ref. */
function useSlots(apiBase: string, providerId: string, day: Date | null) {
  const cache = useRef(new Map<string, Slot[]>());
  const [state, setState] = useState<AsyncState<Slot[]>>({
    data: null,
    loading: false,
    error: null,
  });
  const [reloadToken, setReloadToken] = useState(0);

  useEffect(() => {
    if (!day) {
      setState({ data: null, loading: false, error: null });
      return;
    }
    const key = toIsoDate(day);
    const cached = cache.current.get(key);
    if (cached) {
      setState({ data: cached, loading: false, error: null });
      return;
    }
    let cancelled = false;
    setState({ data: null, loading: true, error: null });
    fetch(`${apiBase}/providers/${providerId}/slots?date=${key}`)
      .then((res) => {
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        return res.json() as Promise<{ slots: Slot[] }>;
      })
      .then((body) => {
        cache.current.set(key, body.slots);
        if (!cancelled) setState({ data: body.slots, loading: false, error: null });
      })
      .catch(() => {
        if (!cancelled) setState({ data: null, loading: false, error: "Could not load times." });
      });
    return () => {
      cancelled = true;
    };
  }, [apiBase, providerId, day, reloadToken]);

  const invalidate = useCallback(() => {
    if (day) cache.current.delete(toIsoDate(day));
    setReloadToken((t) => t + 1);
  }, [day]);

  return { ...state, invalidate };
}

/** Counts down the hold that the server places on a slot while the form is filled. */
function useHoldTimer(expiresAt: number | null, onExpire: () => void) {
  const [secondsLeft, setSecondsLeft] = useState<number | null>(null);

  useEffect(() => {
    if (expiresAt === null) {
      setSecondsLeft(null);
      return;
    }
    const tick = () => {
      const left = Math.max(0, Math.round((expiresAt - Date.now()) / 1000));
      setSecondsLeft(left);
      if (left === 0) onExpire();
    };
    tick();
    const id = setInterval(tick, 1000);
    return () => clearInterval(id);
  }, [expiresAt]);

  return secondsLeft;
}

// ---------------------------------------------------------------------------
// API calls
// ---------------------------------------------------------------------------

async function holdSlot(apiBase: string, slotId: string): Promise<{ holdId: string; expiresAt: number }> {
  const res = await fetch(`${apiBase}/holds`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ slotId }),
  });
  if (res.status === 409) {
    throw new Error("Sorry, that time was just taken. Please pick another.");
  }
  if (!res.ok) throw new Error("Could not reserve that time.");
  const body = await res.json();
  return { holdId: body.holdId, expiresAt: Date.parse(body.expiresAt) };
}

async function confirmBooking(
  apiBase: string,
  holdId: string,
  request: BookingRequest,
): Promise<BookingConfirmation> {
  const res = await fetch(`${apiBase}/holds/${holdId}/confirm`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(request),
  });
  if (!res.ok) {
    const text = await res.text();
    throw new Error(text || "Booking failed.");
  }
  return res.json();
}

// ---------------------------------------------------------------------------
// Presentational pieces
// ---------------------------------------------------------------------------

interface CalendarProps {
  month: Date;
  selected: Date | null;
  availableDays: Set<string> | null;
  minDate: Date;
  maxDate: Date;
  locale: string;
  onSelect: (d: Date) => void;
  onMonthChange: (delta: number) => void;
}

function Calendar({
  month,
  selected,
  availableDays,
  minDate,
  maxDate,
  locale,
  onSelect,
  onMonthChange,
}: CalendarProps) {
  const grid = useMemo(() => buildMonthGrid(month), [month]);
  const title = new Intl.DateTimeFormat(locale, { month: "long", year: "numeric" }).format(month);
  const weekdayNames = useMemo(() => {
    const monday = new Date(2024, 0, 1); // a known Monday
    return Array.from({ length: 7 }, (_, i) =>
      new Intl.DateTimeFormat(locale, { weekday: "short" }).format(addDays(monday, i)),
    );
  }, [locale]);

  return (
    <div className={styles.calendar}>
      <div className={styles.calendarHeader}>
        <button type="button" onClick={() => onMonthChange(-1)} aria-label="Previous month">
          ‹
        </button>
        <span>{title}</span>
        <button type="button" onClick={() => onMonthChange(1)} aria-label="Next month">
          ›
        </button>
      </div>
      <table role="grid">
        <thead>
          <tr>
            {weekdayNames.map((n) => (
              <th key={n} scope="col">
                {n}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {grid.map((row, ri) => (
            <tr key={ri}>
              {row.map((day) => {
                const inMonth = day.getMonth() === month.getMonth();
                const iso = toIsoDate(day);
                const inRange = day >= minDate && day <= maxDate;
                const hasSlots = availableDays?.has(iso) ?? false;
                const disabled = !inMonth || !inRange || !hasSlots;
                const isSelected = selected !== null && isSameDay(day, selected);
                return (
                  <td key={iso}>
                    <button
                      type="button"
                      disabled={disabled}
                      aria-pressed={isSelected}
                      className={[
                        styles.day,
                        isSelected ? styles.selected : "",
                        hasSlots ? styles.available : "",
                      ].join(" ")}
                      onClick={() => onSelect(day)}
                    >
                      {day.getDate()}
                    </button>
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

interface SlotListProps {
  slots: Slot[];
  selectedId: string | null;
  locale: string;
  timeZone: string;
  onPick: (slot: Slot) => void;
}

function SlotList({ slots, selectedId, locale, timeZone, onPick }: SlotListProps) {
  if (slots.length === 0) {
    return <p className={styles.empty}>No times left on this day.</p>;
  }
  return (
    <ul className={styles.slotList}>
      {slots.map((slot, i) => (
        <li key={i}>
          <button
            type="button"
            className={slot.id === selectedId ? styles.slotSelected : styles.slot}
            onClick={() => onPick(slot)}
            disabled={slot.remaining <= 0}
          >
            {formatTime(slot.start, locale, timeZone)} – {formatTime(slot.end, locale, timeZone)}
            <small>{slot.practitionerName}</small>
          </button>
        </li>
      ))}
    </ul>
  );
}

interface FieldProps {
  label: string;
  name: FieldName;
  type?: string;
  value: string;
  error?: string;
  show: boolean;
  multiline?: boolean;
  onChange: (field: FieldName, value: string) => void;
  onBlur: (field: FieldName) => void;
}

function Field({ label, name, type = "text", value, error, show, multiline, onChange, onBlur }: FieldProps) {
  const id = `bw-${name}`;
  const describedBy = show && error ? `${id}-err` : undefined;
  const common = {
    id,
    name,
    value,
    "aria-invalid": show && !!error,
    "aria-describedby": describedBy,
    onBlur: () => onBlur(name),
  };
  return (
    <div className={styles.field}>
      <label htmlFor={id}>{label}</label>
      {multiline ? (
        <textarea {...common} rows={3} onChange={(e) => onChange(name, e.target.value)} />
      ) : (
        <input {...common} type={type} onChange={(e) => onChange(name, e.target.value)} />
      )}
      {show && error && (
        <span id={describedBy} className={styles.error} role="alert">
          {error}
        </span>
      )}
    </div>
  );
}

// ---------------------------------------------------------------------------
// Main widget
// ---------------------------------------------------------------------------

type Step = "pick" | "details" | "done";

export default function BookingWidget({
  providerId,
  apiBase = "https://booking.example.com/api/v2",
  timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone,
  locale = navigator.language,
  minNoticeHours = 2,
  maxDaysAhead = 60,
  onBooked,
}: BookingWidgetProps) {
  const today = new Date();
  const [month, setMonth] = useState(() => startOfMonth(today));
  const [selectedDay, setSelectedDay] = useState<Date | null>(null);
  const [selectedSlot, setSelectedSlot] = useState<Slot | null>(null);
  const [hold, setHold] = useState<{ holdId: string; expiresAt: number } | null>(null);
  const [step, setStep] = useState<Step>("pick");
  const [submitting, setSubmitting] = useState(false);
  const [submitError, setSubmitError] = useState<string | null>(null);
  const [confirmation, setConfirmation] = useState<BookingConfirmation | null>(null);
  const [form, dispatch] = useReducer(formReducer, initialForm);

  const minDate = new Date(today.getTime() + minNoticeHours * 3600 * 1000);
  const maxDate = addDays(today, maxDaysAhead);

  const days = useAvailableDays(apiBase, providerId, month);
  const slots = useSlots(apiBase, providerId, selectedDay);

  const errors = useMemo(() => validateBooking(form.values), [form.values]);
  const isValid = Object.keys(errors).length === 0;

  const handleHoldExpired = useCallback(() => {
    setHold(null);
    setSelectedSlot(null);
    setStep("pick");
    setSubmitError("Your reserved time expired. Please choose again.");
    slots.invalidate();
  }, [slots]);

  const secondsLeft = useHoldTimer(hold?.expiresAt ?? null, handleHoldExpired);

  const changeMonth = (delta: number) => {
    setMonth((m) => addMonths(m, delta));
    setSelectedDay(null);
    setSelectedSlot(null);
  };

  const pickSlot = async (slot: Slot) => {
    setSubmitError(null);
    setSelectedSlot(slot);
    try {
      const h = await holdSlot(apiBase, slot.id);
      setHold(h);
      setStep("details");
    } catch (err) {
      setSubmitError((err as Error).message);
      setSelectedSlot(null);
      slots.invalidate();
    }
  };

  const onSubmit = async (e: React.FormEvent) => {
    e.preventDefault();
    dispatch({ type: "touchAll" });
    if (!isValid || !hold || !selectedSlot) return;

    setSubmitting(true);
    setSubmitError(null);
    try {
      const result = await confirmBooking(apiBase, hold.holdId, {
        slotId: selectedSlot.id,
        name: form.values.name.trim(),
        email: form.values.email.trim(),
        phone: form.values.phone || undefined,
        notes: form.values.notes || undefined,
        reminderOptIn: form.reminderOptIn,
      });
      setConfirmation(result);
      setHold(null);
      setStep("done");
      onBooked?.(result);
    } catch (err) {
      setSubmitError((err as Error).message);
    }
    setSubmitting(false);
  };

  const startOver = () => {
    dispatch({ type: "reset" });
    setSelectedDay(null);
    setSelectedSlot(null);
    setConfirmation(null);
    setStep("pick");
  };

  if (step === "done" && confirmation) {
    return (
      <section className={styles.widget} aria-live="polite">
        <h2>You're booked!</h2>
        <p>
          Reference <strong>{confirmation.reference}</strong> —{" "}
          {new Date(confirmation.slot.start).toLocaleString(locale, { timeZone })}
        </p>
        <p>
          <a href={confirmation.calendarLink}>Add to calendar</a>
        </p>
        <div dangerouslySetInnerHTML={{ __html: `Thanks, ${form.values.name}!` }} />
        <button type="button" onClick={startOver}>
          Book another appointment
        </button>
      </section>
    );
  }

  return (
    <section className={styles.widget}>
      {submitError && (
        <div className={styles.banner} role="alert">
          {submitError}
        </div>
      )}

      {step === "pick" && (
        <div className={styles.pickLayout}>
          <Calendar
            month={month}
            selected={selectedDay}
            availableDays={days.data}
            minDate={minDate}
            maxDate={maxDate}
            locale={locale}
            onSelect={(d) => {
              setSelectedDay(d);
              setSelectedSlot(null);
            }}
            onMonthChange={changeMonth}
          />
          <div className={styles.slots}>
            {days.error && <p className={styles.error}>{days.error}</p>}
            {!selectedDay && <p>Select a highlighted day to see available times.</p>}
            {slots.loading && <p>Loading times…</p>}
            {slots.error && (
              <p className={styles.error}>
                {slots.error} <button onClick={slots.invalidate}>Retry</button>
              </p>
            )}
            {slots.data && (
              <SlotList
                slots={slots.data.filter((s) => new Date(s.start) >= minDate)}
                selectedId={selectedSlot?.id ?? null}
                locale={locale}
                timeZone={timeZone}
                onPick={pickSlot}
              />
            )}
          </div>
        </div>
      )}

      {step === "details" && selectedSlot && (
        <form noValidate onSubmit={onSubmit} className={styles.form}>
          <p className={styles.summary}>
            {new Date(selectedSlot.start).toLocaleString(locale, { timeZone })} with{" "}
            {selectedSlot.practitionerName}
            {secondsLeft !== null && (
              <span className={styles.timer}>
                {" "}
                — held for {Math.floor(secondsLeft / 60)}:{String(secondsLeft % 60).padStart(2, "0")}
              </span>
            )}
          </p>
          <Field
            label="Full name"
            name="name"
            value={form.values.name}
            error={errors.name}
            show={!!form.touched.name}
            onChange={(f, v) => dispatch({ type: "change", field: f, value: v })}
            onBlur={(f) => dispatch({ type: "blur", field: f })}
          />
          <Field
            label="Email"
            name="email"
            type="email"
            value={form.values.email}
            error={errors.email}
            show={!!form.touched.email}
            onChange={(f, v) => dispatch({ type: "change", field: f, value: v })}
            onBlur={(f) => dispatch({ type: "blur", field: f })}
          />
          <Field
            label="Phone (optional)"
            name="phone"
            type="tel"
            value={form.values.phone}
            error={errors.phone}
            show={!!form.touched.phone}
            onChange={(f, v) => dispatch({ type: "change", field: f, value: v })}
            onBlur={(f) => dispatch({ type: "blur", field: f })}
          />
          <Field
            label="Anything we should know?"
            name="notes"
            multiline
            value={form.values.notes}
            error={errors.notes}
            show={!!form.touched.notes}
            onChange={(f, v) => dispatch({ type: "change", field: f, value: v })}
            onBlur={(f) => dispatch({ type: "blur", field: f })}
          />
          <label className={styles.checkbox}>
            <input
              type="checkbox"
              checked={form.reminderOptIn}
              onChange={() => dispatch({ type: "toggleReminder" })}
            />
            Send me a reminder the day before
          </label>
          <div className={styles.actions}>
            <button
              type="button"
              onClick={() => {
                setHold(null);
                setStep("pick");
              }}
            >
              Back
            </button>
            <button type="submit" disabled={submitting}>
              {submitting ? "Booking…" : "Confirm booking"}
            </button>
          </div>
        </form>
      )}
    </section>
  );
}
