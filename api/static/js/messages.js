// Every error code of API.md, in words a shopper or merchant understands, with the next
// step the page offers. `next` is one of: retry (the page retries by itself after
// `retryAfter`), rejoin, new_card, reload, sign_in, fix (the form), none.

const SHOPPER = {
  network_error: ["We can't reach the shop right now.", 'Check your connection — we keep trying.', 'retry'],
  rate_limited: ["You're asking a little too often.", 'We try again by ourselves in a moment.', 'retry'],
  overloaded: ['The shop is very busy right now.', 'Your place is kept; we try again in a moment.', 'retry'],
  request_timeout: ['The shop took too long to answer.', 'We try again in a moment.', 'retry'],
  dependency_unavailable: ['Part of the shop is briefly unavailable.', 'We try again in a moment.', 'retry'],
  internal: ['Something went wrong on our side.', 'We try again in a moment.', 'retry'],
  queue_full: ['The line is full right now.', 'We try to join again by ourselves in a moment.', 'retry'],
  sale_not_found: ["We can't find this sale.", 'Check the link you followed.', 'none'],
  sale_closed: ['This sale has ended, so the line is closed.', 'There is nothing left to queue for.', 'none'],
  proof_required: ['This sale checks that you are a person before you join.', 'We solve a small puzzle for you, then join.', 'retry'],
  proof_invalid: ["That check didn't go through.", 'We solve a new puzzle for you and join again.', 'retry'],
  not_in_queue: ["You're not in the line for this sale.", 'Join the line to get a place.', 'rejoin'],
  not_admitted: ['Your turn to buy has passed (or has not come yet).', 'Rejoin the line to get a new turn.', 'rejoin'],
  sold_out: ['Sold out.', 'Every unit is sold or held by someone checking out.', 'none'],
  sale_not_live: ["The sale isn't open right now.", 'It has not started, is paused or has ended.', 'reload'],
  per_user_limit_exceeded: [
    "You've reached the most this sale allows per shopper.",
    'Units you hold or bought count toward the limit: finish the checkout you have, or choose fewer.',
    'none',
  ],
  invalid_quantity: ['That quantity is not allowed.', 'Choose a quantity from the list.', 'fix'],
  reservation_not_found: ["We can't find your reservation any more.", 'Rejoin the line to try again.', 'rejoin'],
  reservation_expired: [
    'Your hold expired and the units went back on sale.',
    'Rejoin the line to try again.',
    'rejoin',
  ],
  reservation_not_held: ['This reservation is no longer held.', 'It was released or already paid for.', 'reload'],
  payment_declined: [
    'Your card was declined.',
    'Try another card — your units stay reserved until the timer runs out.',
    'new_card',
  ],
  payment_unavailable: [
    "The payment provider isn't answering.",
    'Your units are still reserved. Try again in a moment.',
    'new_card',
  ],
  request_in_progress: ['Your payment is still being processed.', 'We check again in a moment.', 'retry'],
  unit_unavailable: [
    'A unit of your reservation was sold to someone else.',
    'Your card was not charged. Rejoin the line to try again.',
    'rejoin',
  ],
  order_not_found: ["We can't find that order.", 'Check your order history.', 'none'],
  idempotency_key_reused: ['That payment attempt was already used.', 'Press Pay again to make a new attempt.', 'new_card'],
  idempotency_key_required: ['The payment could not be sent.', 'Press Pay again.', 'new_card'],
  invalid_idempotency_key: ['The payment could not be sent.', 'Press Pay again.', 'new_card'],
  unauthorized: ['Your shopping session has expired.', 'We start a new one when you join again.', 'rejoin'],
  forbidden: ["This session can't do that.", 'Reload the page.', 'reload'],
  invalid_field: ['Please check what you entered.', '', 'fix'],
  invalid_body: ['The request was not understood.', 'Reload the page and try again.', 'reload'],
  invalid_query: ['The request was not understood.', 'Reload the page and try again.', 'reload'],
  invalid_path: ['The request was not understood.', 'Reload the page and try again.', 'reload'],
  payload_too_large: ['That was too much to send.', 'Shorten it and try again.', 'fix'],
  not_found: ['That page or item does not exist.', 'Check the link.', 'none'],
  method_not_allowed: ['The request was not understood.', 'Reload the page and try again.', 'reload'],
  unsupported_media_type: ['The request was not understood.', 'Reload the page and try again.', 'reload'],
  not_ready: ['The shop is starting up.', 'We try again in a moment.', 'retry'],
  access_code_required: ['This sale is by invitation.', 'Enter the access code you were given, then join.', 'fix'],
  access_code_invalid: ["That access code isn't valid for this sale.", 'Check the code and try again.', 'fix'],
  access_code_used_up: ['That access code has been used up.', 'Each code joins as many shoppers as it allows.', 'fix'],
  variant_required: ['Choose which option you want.', 'Pick a size or option, then reserve.', 'fix'],
  not_cancellable: [
    'This order can no longer be cancelled.',
    'The time to cancel has passed, the sale has ended, or it was already refunded.',
    'none',
  ],
  variant_not_found: ["That option isn't sold in this sale.", 'Reload the page to see the options.', 'reload'],
};

const MERCHANT = {
  unauthorized: ['This token was not accepted.', 'It may have expired or not be a merchant token: paste a new one.', 'sign_in'],
  forbidden: ['This token is not a merchant token.', 'Paste a merchant token.', 'sign_in'],
  sale_not_found: ['No such sale among yours.', 'It may belong to another merchant.', 'none'],
  sale_locked: ['That field cannot change once the sale has started.', 'Leave it as it was.', 'fix'],
  precondition_failed: [
    'Someone changed this sale since you opened it.',
    'Reload it to see the latest version, then make your change again.',
    'reload',
  ],
  insufficient_free_stock: ['Not enough free units to remove.', 'Held and sold units cannot be removed.', 'fix'],
  invalid_transition: ["That action isn't possible in the sale's current state.", '', 'reload'],
  variant_required: ['This sale has several variants.', 'Change the stock of one variant in the Variants table.', 'fix'],
  variant_not_found: ['No such variant in this sale.', 'Reload the sale to see its variants.', 'reload'],
  invalid_beacon: ["That beacon round didn't verify.", "Check the round number and its signature from drand's quicknet chain.", 'fix'],
  webhook_limit_reached: ['You have as many webhook endpoints as allowed.', 'Delete one you no longer use first.', 'fix'],
  webhook_not_found: ['No such webhook endpoint among yours.', 'Reload the list.', 'reload'],
  not_refundable: ["This order can't be refunded.", 'It was already cancelled or refunded.', 'reload'],
  order_not_found: ['No such order in this sale.', 'Refresh the orders to see the latest.', 'reload'],
  request_in_progress: ['That refund is still being processed.', 'Press Refund again in a moment to see how it ended.', 'retry'],
  payment_unavailable: ["The payment provider isn't answering.", 'The refund is not done yet: press Refund again in a moment.', 'retry'],
  idempotency_key_reused: ['That refund attempt was already used for another choice.', 'Press Refund again to send a new one.', 'fix'],
  idempotency_key_required: ['The refund could not be sent.', 'Press Refund again.', 'fix'],
  invalid_field: ['Please check the highlighted field.', '', 'fix'],
  invalid_body: ['The form could not be sent.', 'A value has the wrong type.', 'fix'],
};

/**
 * Explains an ApiError: { title, hint, next, retryAfter }.
 * @param {{code: string, detail?: string, retryAfter?: number, status?: number}} err
 * @param {'shopper'|'merchant'} who
 */
export function explain(err, who = 'shopper') {
  const table = who === 'merchant' ? { ...SHOPPER, ...MERCHANT } : SHOPPER;
  let entry = table[err.code];
  if (!entry) {
    if (err.status === 429 || err.status >= 500 || err.status === 0) entry = SHOPPER.internal;
    else entry = ['Something went wrong.', err.detail || 'Reload the page and try again.', 'reload'];
  }
  const [title, hint, next] = entry;
  const retryAfter = err.retryAfter ?? (next === 'retry' ? 2 : undefined);
  return { title, hint, next, retryAfter, detail: err.detail || '' };
}

/** Every code the pages explain (the tests check the API's codes are all here). */
export const KNOWN_CODES = Object.freeze([...new Set([...Object.keys(SHOPPER), ...Object.keys(MERCHANT)])]);
